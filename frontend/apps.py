from django.apps import AppConfig


class FrontendConfig(AppConfig):
    """Serves the single-page web app built from frontend/app."""

    name = "frontend"
