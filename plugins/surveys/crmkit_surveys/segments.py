"""Segments: the tenant's named customer filters, as SQL, for results and schedules."""

from __future__ import annotations

from typing import Any

import crmkit
from sqlalchemy import ColumnElement, String, literal, select

from crmkit_surveys.settings import Segment


def members(segment: Segment) -> Any:
    """``SELECT customer_id, segment`` for the segment's current customers (erased and
    archived customers are in no segment)."""
    conditions: list[ColumnElement[bool]] = [
        crmkit.Customer.erased_at.is_(None),
        crmkit.Customer.archived_at.is_(None),
    ]
    if segment.tag is not None:
        conditions.append(crmkit.Customer.tags.any(tag=segment.tag.strip().lower()))
    if segment.stage is not None:
        conditions.append(crmkit.Customer.lifecycle_stage == segment.stage)
    return select(
        crmkit.Customer.id.label("customer_id"), literal(segment.name, String).label("segment")
    ).where(*conditions)
