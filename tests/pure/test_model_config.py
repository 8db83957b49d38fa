"""config.pbtxt: built as a ModelConfig, printed, parsed back, compared."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from modelcanary.errors import UsageError
from modelcanary.modelrepo import model_config
from modelcanary.modelrepo.model_config import ServingOptions, Signature
from modelcanary.modelrepo.tensorspec import DTYPES, TensorSpec

FP32, INT64 = DTYPES["fp32"], DTYPES["int64"]
SIG = Signature(
    inputs=(TensorSpec("dense", FP32, (16,)), TensorSpec("ids", INT64, (-1,))),
    outputs=(TensorSpec("score", FP32, ()), TensorSpec("embedding", FP32, (8,))),
    batched=True,
)


def roundtrip(config: mc.ModelConfig) -> mc.ModelConfig:
    return model_config.parse(model_config.render(config), "test")


def test_full_config_roundtrips_through_text_format() -> None:
    options = ServingOptions(
        max_batch_size=16,
        dynamic_batching=True,
        preferred_batch_sizes=(4, 8),
        max_queue_delay_us=250,
        instances=2,
        kind="gpu",
        accelerator="tensorrt:fp16",
    )
    config = roundtrip(model_config.build_config("ranker", SIG, options, None))
    assert config.name == "ranker"
    assert config.backend == "onnxruntime"
    assert config.max_batch_size == 16
    assert config.version_policy.HasField("all")
    assert [(i.name, mc.DataType.Name(i.data_type), list(i.dims)) for i in config.input] == [
        ("dense", "TYPE_FP32", [16]),
        ("ids", "TYPE_INT64", [-1]),
    ]
    score = config.output[0]
    assert list(score.dims) == [1] and score.HasField("reshape") and not score.reshape.shape
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert config.instance_group[0].count == 2
    (trt,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.name == "tensorrt" and dict(trt.parameters) == {"precision_mode": "FP16"}
    assert model_config.signature_of(config) == SIG


def test_pinned_config_serves_exactly_one_version() -> None:
    config = roundtrip(model_config.build_config("ranker", SIG, ServingOptions(), [3]))
    assert list(config.version_policy.specific.versions) == [3]
    assert model_config.pinned_config_name(3) == "v3"


def test_defaults_cpu_without_count_or_batching_options() -> None:
    config = model_config.build_config("m", SIG, ServingOptions(), None)
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert config.instance_group[0].count == 0  # unset: Triton picks the count
    assert not config.HasField("dynamic_batching")
    assert not config.HasField("optimization")


def test_tensorrt_without_fp16_has_no_precision_mode() -> None:
    options = ServingOptions(kind="gpu", accelerator="tensorrt")
    config = model_config.build_config("m", SIG, options, None)
    (trt,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert dict(trt.parameters) == {}


def test_unbatched_signature_has_max_batch_size_zero() -> None:
    unbatched = Signature(SIG.inputs, SIG.outputs, batched=False)
    config = model_config.build_config("m", unbatched, ServingOptions(max_batch_size=8), None)
    assert config.max_batch_size == 0
    assert model_config.signature_of(config) == unbatched


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ServingOptions(max_batch_size=-1), "--max-batch-size must be 0"),
        (ServingOptions(max_batch_size=0, dynamic_batching=True), "needs --max-batch-size"),
        (ServingOptions(preferred_batch_sizes=(4,)), "need --dynamic-batching"),
        (ServingOptions(max_queue_delay_us=10), "need --dynamic-batching"),
        (
            ServingOptions(max_batch_size=8, dynamic_batching=True, preferred_batch_sizes=(16,)),
            "--preferred-batch-size 16 must be between 1 and --max-batch-size 8",
        ),
        (ServingOptions(instances=0), "--instances must be at least 1"),
        (ServingOptions(kind="tpu"), "--kind 'tpu' is not valid"),
        (ServingOptions(kind="gpu", accelerator="openvino"), "--accelerator 'openvino'"),
        (ServingOptions(accelerator="tensorrt"), "add --kind gpu"),
    ],
)
def test_contradictory_options_are_rejected(options: ServingOptions, message: str) -> None:
    with pytest.raises(UsageError) as error:
        options.validate()
    assert message in str(error.value)


def test_parse_error_names_the_file() -> None:
    with pytest.raises(UsageError, match=r"repo/m/config.pbtxt: not a valid Triton model"):
        model_config.parse("name: 'm'\nmax_batch_size: lots\n", "repo/m/config.pbtxt")


def test_differences_name_the_tensor() -> None:
    changed = Signature(
        inputs=(TensorSpec("dense", FP32, (32,)), SIG.inputs[1]),
        outputs=(SIG.outputs[0], TensorSpec("embedding", INT64, (8,))),
        batched=True,
    )
    assert changed.differences(SIG) == [
        "input 'dense': dims 16 in the existing config, 32 in this export",
        "output 'embedding': dtype fp32 in the existing config, int64 in this export",
    ]
    renamed = Signature(SIG.inputs, (SIG.outputs[0],), batched=False)
    problems = renamed.differences(SIG)
    assert problems[0].startswith("batching:")
    assert "outputs: ['score', 'embedding'] in the existing config, ['score']" in problems[1]
    assert SIG.differences(SIG) == []
