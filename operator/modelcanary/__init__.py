"""modelcanary: serving and canary rollouts for ML models on Triton, KServe and Prometheus."""

__version__ = "0.1.0"
