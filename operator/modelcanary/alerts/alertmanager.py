"""Alertmanager routing: on-call for critical, chat for warnings, the controller for all.

Receivers are any of Alertmanager's own integrations, given as data (values in the chart,
flags locally). The controller's own notifications (promoted, rolled back) carry
`origin="modelcanary-controller"` and are not sent back to it. Pure: data in, YAML out.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelcanary.errors import UsageError, describe_validation_errors

# The controller's webhook receiver: where Alertmanager posts, and where a controller in
# another process follows the alert book.
WEBHOOK_PATH = "/alertmanager/webhook"
ALERTS_PATH = "/alertmanager/alerts"
CONTROLLER_ORIGIN = "modelcanary-controller"


class _Receiver(BaseModel):
    model_config = ConfigDict(extra="forbid")
    send_resolved: bool = True


class Webhook(_Receiver):
    type: Literal["webhook"]
    url: str
    bearer_token_file: str | None = None

    def config(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"url": self.url, "send_resolved": self.send_resolved}
        if self.bearer_token_file:
            entry["http_config"] = {
                "authorization": {"type": "Bearer", "credentials_file": self.bearer_token_file}
            }
        return {"webhook_configs": [entry]}


class PagerDuty(_Receiver):
    type: Literal["pagerduty"]
    routing_key_file: str

    def config(self) -> dict[str, Any]:
        return {
            "pagerduty_configs": [
                {"routing_key_file": self.routing_key_file, "send_resolved": self.send_resolved}
            ]
        }


class Slack(_Receiver):
    type: Literal["slack"]
    api_url_file: str
    channel: str

    def config(self) -> dict[str, Any]:
        return {
            "slack_configs": [
                {
                    "api_url_file": self.api_url_file,
                    "channel": self.channel,
                    "send_resolved": self.send_resolved,
                    "title": "{{ .CommonLabels.alertname }} {{ .CommonLabels.model }} "
                    "{{ .CommonLabels.version }} ({{ .Status }})",
                    "text": "{{ range .Alerts }}{{ .Annotations.description }}\n{{ end }}",
                }
            ]
        }


class Email(_Receiver):
    type: Literal["email"]
    to: str
    sender: str = Field(alias="from")
    smarthost: str
    auth_username: str | None = None
    auth_password_file: str | None = None

    def config(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "to": self.to,
            "from": self.sender,
            "smarthost": self.smarthost,
            "send_resolved": self.send_resolved,
        }
        if self.auth_username:
            entry["auth_username"] = self.auth_username
        if self.auth_password_file:
            entry["auth_password_file"] = self.auth_password_file
        return {"email_configs": [entry]}


class WeChat(_Receiver):
    type: Literal["wechat"]
    corp_id: str
    api_secret: str
    agent_id: str
    to_party: str

    def config(self) -> dict[str, Any]:
        return {
            "wechat_configs": [
                {
                    "corp_id": self.corp_id,
                    "api_secret": self.api_secret,
                    "agent_id": self.agent_id,
                    "to_party": self.to_party,
                    "send_resolved": self.send_resolved,
                }
            ]
        }


Receiver = Annotated[Webhook | PagerDuty | Slack | Email | WeChat, Field(discriminator="type")]


class Timing(BaseModel):
    """How quickly notifications go out (demo) or how calmly (production)."""

    model_config = ConfigDict(extra="forbid")
    group_wait: str
    group_interval: str  # Alertmanager rejects 0
    repeat_interval: str


TIMINGS = {
    "demo": Timing(group_wait="0s", group_interval="1s", repeat_interval="1h"),
    "production": Timing(group_wait="30s", group_interval="5m", repeat_interval="4h"),
}


class Routing(BaseModel):
    """Where notifications go."""

    model_config = ConfigDict(extra="forbid")
    controller: Webhook
    oncall: Receiver
    chat: Receiver
    timing: Timing = TIMINGS["production"]


def parse_routing(data: object, source: str) -> Routing:
    try:
        return Routing.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"{source}: {describe_validation_errors(exc)}") from None


def config(routing: Routing) -> dict[str, Any]:
    """The Alertmanager configuration as data."""
    timing = routing.timing
    return {
        "route": {
            "receiver": "oncall",
            # event_id: each controller notice is its own notification (Prometheus' alerts
            # have no such label and group by alert, model and version)
            "group_by": ["alertname", "model", "version", "event_id"],
            "group_wait": timing.group_wait,
            "group_interval": timing.group_interval,
            "repeat_interval": timing.repeat_interval,
            "routes": [
                {
                    # every model alert reaches the controller, which acts on it at once
                    "receiver": "controller",
                    "matchers": ['model=~".+"', f'origin!="{CONTROLLER_ORIGIN}"'],
                    "group_wait": "0s",
                    "continue": True,
                },
                {"receiver": "oncall", "matchers": ['severity="critical"']},
                {"receiver": "chat", "matchers": ['severity=~"warning|info"']},
            ],
        },
        "inhibit_rules": [
            {
                # a critical alert of a version silences the warnings of the same version
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["model", "version"],
            }
        ],
        "receivers": [
            {"name": "controller", **routing.controller.config()},
            {"name": "oncall", **routing.oncall.config()},
            {"name": "chat", **routing.chat.config()},
        ],
    }


def render(routing: Routing) -> str:
    header = "# Generated by modelcanary: Alertmanager routing for model alerts.\n"
    return header + yaml.safe_dump(config(routing), sort_keys=False, width=1000)
