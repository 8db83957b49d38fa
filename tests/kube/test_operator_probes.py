"""The operator's probes on a real API server: readiness says which replica holds the
Lease, liveness fails when the tick loop stalls.

Two `modelcanary operator` processes share a Lease. The leader reaches the API server,
and its Prometheus, through a TCP proxy that the test holds (connections stay open,
nothing crosses: servers that hang), so its tick loop stalls on queries that do not
return in time (the ticks read the rollouts from a watch, so a tick with nothing to write
sends the API server nothing), and its Lease renewals hang. Its liveness must fail (the kubelet would restart it) while the standby,
whose loop goes round, stays live, takes the Lease once it expires, and becomes the ready
one. Released, the old leader's loop goes round again and it is live, as a standby.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.apiserver import ApiServer, write_kubeconfig
from tests.support.operator_process import OperatorProcess
from tests.support.tcp_proxy import TcpProxy
from tests.support.traffic import SOURCE, WINDOW
from tests.support.waits import until

pytestmark = pytest.mark.slow
LEASE = "modelcanary-probes"
STALLED_AFTER_S = 3  # the leader's loop ticks every second; three without a round: stalled


def probe(replica: OperatorProcess, path: str) -> tuple[int, str]:
    reply = httpx.get(f"http://127.0.0.1:{replica.metrics_port}{path}", timeout=5)
    return reply.status_code, reply.text


def test_the_leader_is_ready_the_standby_not_and_a_stalled_loop_is_not_live(
    apiserver: ApiServer, namespace: str, crds: None, tmp_path: Path
) -> None:
    proxy = TcpProxy(int(apiserver.url.rsplit(":", 1)[1])).start()
    proxied = write_kubeconfig(
        tmp_path / "proxy.kubeconfig",
        f"https://127.0.0.1:{proxy.port}",
        apiserver.ca_file,
        "admin",
        apiserver.admin_token,
    )

    def replica(identity: str, kubeconfig: Path, prometheus: str) -> OperatorProcess:
        return OperatorProcess(
            kubeconfig,
            namespace,
            prometheus,
            tmp_path / f"{identity}.log",
            f"--source={SOURCE}",
            f"--window={WINDOW}",
            "--tick=1s",
            f"--stalled-after={STALLED_AFTER_S}s",
            f"--leader-election={LEASE}",
            f"--identity={identity}",
        )

    leader = replica("leader", proxied, f"http://127.0.0.1:{proxy.port}")
    standby = replica("standby", apiserver.kubeconfig, "http://127.0.0.1:9")
    try:
        leader.start()
        until(
            lambda: probe(leader, "/readyz")[0] == 200,
            30,
            "the leader never ready",
            context=leader.tail,
        )
        standby.start()
        assert probe(leader, "/readyz") == (200, "ok")
        assert probe(standby, "/readyz") == (
            503,
            f"standby: standby does not hold the Lease {LEASE}",
        )
        assert probe(leader, "/livez") == (200, "ok") and probe(standby, "/livez") == (200, "ok")

        proxy.hold()  # the leader's next request waits for as long as the API server hangs
        answers: list[tuple[int, str]] = []

        def live_fails() -> bool:
            answers.append(probe(leader, "/livez"))
            return answers[-1][0] == 503

        until(live_fails, 30, "the hung leader's /livez never failed", context=leader.tail)
        why = answers[-1][1]
        assert why.startswith("the tick loop has not gone round for ") and why.endswith(
            f"(stalled after {STALLED_AFTER_S} s)"
        ), why
        assert probe(standby, "/livez") == (200, "ok")  # its loop goes round
        # the Lease (15 s) expires unrenewed: the standby takes it and is the ready one
        until(
            lambda: probe(standby, "/readyz")[0] == 200,
            60,
            "the standby never ready",
            context=standby.tail,
        )
        assert probe(leader, "/readyz")[0] == 503
        assert probe(leader, "/healthz") == (200, "ok")  # the process itself still answers

        proxy.release()
        until(
            lambda: probe(leader, "/livez")[0] == 200,
            30,
            "the leader's loop never went round again",
            context=leader.tail,
        )
        until(lambda: probe(leader, "/readyz")[0] == 503, 30, "the old leader stayed ready")
        assert probe(standby, "/readyz") == (200, "ok")
    finally:
        proxy.release()
        leader.stop()
        standby.stop()
        proxy.stop()
        print(f"--- leader log ends:\n{leader.tail()}\n--- standby log ends:\n{standby.tail()}")
