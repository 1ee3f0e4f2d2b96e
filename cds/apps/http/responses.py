"""The shapes of the service's JSON responses, for its OpenAPI document (schemas/openapi.json).

The routes build these documents as plain dicts (what they always sent, byte for byte); the models
here only describe them, strictly (no other keys), so that the committed OpenAPI document says
exactly what a client gets and the test suite validates every response against it. The report
itself (`format=json`) is described by schemas/report.schema.json.
"""

from __future__ import annotations

from typing import Literal

from cds.api import Strict


class SiteInfo(Strict):
    name: str
    hash: str


class WorkerStats(Strict):
    configured: int
    ready: int
    busy: int
    replaced: int


class Health(Strict):
    """GET /healthz."""

    status: Literal["ok"]
    engine_version: str | None
    ruleset_hash: str | None
    site: SiteInfo | None
    sites: dict[str, SiteInfo | None]
    workers: WorkerStats | None


class Service(Strict):
    hook: str
    id: str
    title: str
    description: str
    prefetch: dict[str, str]


class Discovery(Strict):
    """GET /cds-services: the CDS Hooks discovery document."""

    services: list[Service]


class Coding(Strict):
    system: str
    code: str
    display: str


class Source(Strict):
    label: str
    url: str
    topic: Coding


class Link(Strict):
    label: str
    url: str
    type: Literal["absolute", "smart"]


class Card(Strict):
    uuid: str
    summary: str
    indicator: Literal["info", "warning", "critical"]
    detail: str
    source: Source
    links: list[Link]


class Cards(Strict):
    """POST /cds-services/{id}: one card, or none for a patient without a myeloma diagnosis."""

    cards: list[Card]


class FeedbackStored(Strict):
    """POST /cds-services/{id}/feedback: how many feedback items were stored."""

    stored: int


class Problem(Strict):
    field: str | None
    problem: str


class ErrorBody(Strict):
    """Every error response (4xx, 5xx): the CLI's message in one line and the field it names (null: none);
    an invalid profile adds every problem, as the CLI lists them."""

    error: str
    field: str | None
    problems: list[Problem] | None = None
