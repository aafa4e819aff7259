from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DataSharingConfig(AppConfig):
    name = "data_sharing"
    verbose_name = _("数据共享")
