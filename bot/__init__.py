"""The after-sales bot core: everything but the platform adapters."""

from bot.messages import Attachment, Button, Inbound, Outbound

__all__ = ["Attachment", "Button", "Inbound", "Outbound"]
