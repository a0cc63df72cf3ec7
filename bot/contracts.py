"""The names DESIGN.md fixes, each written once: intents, handoff states, priorities and reasons,
button payloads, resolutions, keyword signals and dialogue events.

They are `StrEnum`s, so a member equals its plain string: state saved as JSON, YAML written by a
shop and scripted tests all use the bare names.
"""

from __future__ import annotations

from enum import StrEnum


class Intent(StrEnum):
    GREET = "greet"
    TRACK_ORDER = "track_order"
    RETURN_ITEM = "return_item"
    EXCHANGE_ITEM = "exchange_item"
    REFUND_STATUS = "refund_status"
    DAMAGED_ITEM = "damaged_item"
    WRONG_ITEM = "wrong_item"
    CUSTOMS_DUTIES = "customs_duties"
    TALK_TO_HUMAN = "talk_to_human"
    COMPLAINT = "complaint"
    GOODBYE = "goodbye"
    OTHER = "other"


class HandoffState(StrEnum):
    NONE = "none"  # the bot is talking
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        """Higher is more urgent: low 0 ... urgent 3."""
        return _PRIORITY_ORDER.index(self)

    @classmethod
    def rank_of(cls, value: str | None) -> int:
        """The rank of a stored priority; unknown or missing ranks lowest."""
        if value is None or value not in cls._value2member_map_:
            return 0
        return cls(value).rank


_PRIORITY_ORDER = (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT)


class Reason(StrEnum):
    """Why a conversation went to a person (recorded on the handoff and the ticket)."""

    CUSTOMER_REQUEST = "customer_request"
    LEGAL_THREAT = "legal_threat"
    NEGATIVE_SENTIMENT = "negative_sentiment"
    REPEATED_FAILURE = "repeated_failure"
    VERIFICATION_LOCKED = "verification_locked"
    HIGH_VALUE = "high_value"
    POLICY_DISPUTE = "policy_dispute"
    CUSTOMS_DISPUTE = "customs_dispute"


class Resolution(StrEnum):
    """What the customer may choose at the resolution step; also their button payloads."""

    REFUND = "refund"
    REPLACEMENT = "replacement"
    REPAIR = "repair"
    EXCHANGE = "exchange"
    PARTIAL_REFUND = "partial_refund"


class Button(StrEnum):
    """Button payloads other than the resolutions and the CSAT scores."""

    DONE = "done"  # no more photos
    HUMAN = "human"  # talk to a person


CSAT_PREFIX = "csat:"
CSAT_BUTTONS = tuple(f"{CSAT_PREFIX}{score}" for score in range(1, 6))


class Signal(StrEnum):
    """Keyword lists a locale's recognition data may define."""

    HUMAN = "human"
    LEGAL = "legal"
    ABUSE = "abuse"
    DISPUTE = "dispute"
    DONE = "done"


class Event(StrEnum):
    """What the dialogue noticed during a turn; escalation rules may fire on it."""

    VERIFICATION_LOCKED = "verification_locked"
    HIGH_VALUE_TICKET = "high_value_ticket"
    POLICY_DISPUTE = "policy_dispute"
    CUSTOMS_DISPUTE = "customs_dispute"


class TicketStatus(StrEnum):
    OPEN = "open"
    ESCALATED = "escalated"  # its conversation is with the human queue
    RESOLVED = "resolved"


class AgentMove(StrEnum):
    CLAIM = "claim"
    REPLY = "reply"
    MACRO = "macro"
    HANDBACK = "handback"
    RESOLVE = "resolve"
    TAKEOVER = "takeover"  # a supervisor takes a claimed conversation over


class Slot(StrEnum):
    ORDER_NUMBER = "order_number"
    VERIFIED = "verified"
    PHOTOS = "photos"
    RESOLUTION = "resolution"
    REASON = "reason"


INTENTS: tuple[str, ...] = tuple(Intent)
RESOLUTIONS: tuple[str, ...] = tuple(Resolution)
SIGNALS: tuple[str, ...] = tuple(Signal)


class Window(StrEnum):
    """Policy windows (days from delivery) a flow can check."""

    RETURN_ITEM = "return_item"
    EXCHANGE_ITEM = "exchange_item"
    REPAIR = "repair"
    DAMAGED_ITEM = "damaged_item"
    WRONG_ITEM = "wrong_item"
