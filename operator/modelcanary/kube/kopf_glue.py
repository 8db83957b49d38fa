"""What the operator tells kopf beyond its handlers: credentials from a client
configuration, and no record of the last handled spec."""

from __future__ import annotations

import kopf
from kubernetes import client


def connection_info(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from a client configuration (a bearer token or a client cert)."""
    header = configuration.get_api_key_with_prefix("BearerToken") or ""
    scheme, _, token = header.partition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf records no "last handled" spec: the operator has no handler for a change of
    spec (`changed` sees every event), and kopf would write one to the resource after each
    change (of spec, or of the intent annotation), refusing (409) the tick's status write
    that read it before. A create or update handler would need kopf's default back."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None
