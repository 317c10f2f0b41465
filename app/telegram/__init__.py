"""aiogram wiring: routers, middlewares and the outbox that talks to the Bot API."""
