from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Run history"

    def ready(self) -> None:
        from runs.api import schema  # noqa: F401  (registers OpenAPI extensions)
