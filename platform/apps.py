from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PlatformConfig(AppConfig):
    name = "platform"
    label = "platform"
    verbose_name = _("平台")

    def ready(self) -> None:
        # Bind shared tasks to our tenant-aware Celery app in every process, web included.
        import platform.celery  # noqa: F401
