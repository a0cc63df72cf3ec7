"""Local fakes of the platform APIs the channel adapters talk to, served over real HTTP.

- `tests.fakes.telegram.FakeTelegram`: the Telegram Bot API (methods, files, long polling, webhooks).
- `tests.fakes.graph.FakeGraph`: the WhatsApp Cloud API on Graph (messages, media) and webhook bodies.
- `tests.fakes.specs`: conformance of recorded requests with the platform specs in `SPECS_DIR`.
"""
