"""Notifications: the emails sent to customers (a mailbox table stands in for SMTP)."""

from __future__ import annotations


class Email:
    def __init__(self, order_id: str, to: str, subject: str, body: str) -> None:
        self.order_id = order_id
        self.to = to
        self.subject = subject
        self.body = body
