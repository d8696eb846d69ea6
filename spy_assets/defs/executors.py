"""The executor of every run, chosen by ``SPY_ASSETS_EXECUTOR`` (``spy_assets.config``).

Celery and Kubernetes come from optional extras and are imported only when chosen, so the
default install never needs them; when chosen without their extra, loading the definitions
stops with one line that names the extra to install.
"""

from __future__ import annotations

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

from spy_assets import config
from spy_assets.errors import ConfigError


def executor_for(settings: config.Settings) -> ExecutorDefinition:
    """The executor named by the settings, configured from them."""
    name = settings.executor
    if name == "in_process":
        return in_process_executor
    if name == "multiprocess":
        return multiprocess_executor
    if name == "celery":
        try:
            from dagster_celery import celery_executor
        except ImportError:
            raise _missing_extra(name, "celery") from None
        celery: dict[str, object] = {}
        if settings.celery_broker:
            celery["broker"] = {"env": config.CELERY_BROKER}
        if settings.celery_backend:
            celery["backend"] = {"env": config.CELERY_BACKEND}
        return celery_executor.configured(celery) if celery else celery_executor
    if name == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError:
            raise _missing_extra(name, "k8s") from None
        return k8s_job_executor
    raise ConfigError(f"{config.EXECUTOR}={name!r}: use one of {', '.join(config.EXECUTORS)}")


def _missing_extra(executor: str, extra: str) -> ConfigError:
    return ConfigError(
        f"{config.EXECUTOR}={executor} needs the {extra} extra: "
        f"uv sync --extra {extra} (or pip install 'spy-assets[{extra}]')"
    )
