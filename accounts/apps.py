from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = _("Accounts")

    def ready(self) -> None:
        from allauth.account.signals import login_code_rejected

        from .ratelimit import code_failure_record

        def count_wrong_code(sender, request, user, **kwargs) -> None:
            code_failure_record(user.pk)

        login_code_rejected.connect(count_wrong_code, weak=False, dispatch_uid="count_wrong_code")
