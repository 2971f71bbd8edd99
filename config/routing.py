"""Websocket routes. The live-updates issue fills these in."""

websocket_urlpatterns: list = []
