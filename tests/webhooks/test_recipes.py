"""The shipped recipes: the Prefect Cloud webhook template renders FASHN's envelope into
the event the run's subscriber listens for."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
from prefect.events import Event

from fashn_prefect.webhooks.relay import EVENT, RESOURCE_PREFIX, prediction_event

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"


def test_the_cloud_template_makes_the_relays_event() -> None:
    template = jinja2.Environment().from_string(
        (DEPLOYMENTS / "prefect-cloud-webhook.j2").read_text()
    )
    body = {"id": "abc-123", "status": "completed", "output": ["https://x/y.png"], "error": None}
    event = Event.model_validate(json.loads(template.render(body=body)))
    relayed = Event.model_validate(prediction_event("abc-123", "completed"))
    assert event.event == relayed.event == EVENT
    assert event.resource.id == relayed.resource.id == f"{RESOURCE_PREFIX}abc-123"
    assert event.payload == relayed.payload == {"status": "completed"}


def test_the_relay_service_runs_the_relay() -> None:
    unit = (DEPLOYMENTS / "fashn-webhook-relay.service").read_text()
    assert "fashn-prefect webhook-relay --listen 127.0.0.1:" in unit
    assert "EnvironmentFile=" in unit and "FASHN_PREFECT_WEBHOOK_SECRET" in unit
