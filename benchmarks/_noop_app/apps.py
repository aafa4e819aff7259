from django.apps import AppConfig


class NoopAppConfig(AppConfig):
    name = "benchmarks._noop_app"
    label = "bench_noop"
    default_auto_field = "django.db.models.BigAutoField"
