"""Where events go. Each module: a pure formatter (event -> that API's payloads) and a sender.

A destination is any object with `name`, `accepts` (event types it takes), `max_batch` (1 for
one-request-per-event APIs) and `async send(events)`, raising `DeliveryError` on failure.
"""
