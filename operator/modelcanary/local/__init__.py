"""The local mode: the real Prometheus and Alertmanager next to Triton and the gateway."""
