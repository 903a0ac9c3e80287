"""The ``train-allocator`` flow: train the RL allocator on a stored universe, backtest its test span
beside the baselines net of costs, record and register it (alias ``challenger``)."""

from __future__ import annotations

from prefect import flow

from config.models import AllocatorConfig
from config.settings import Settings, get_settings
from models.allocator.service import AllocatorSummary
from tasks.models import train_allocator_task


@flow(name="train-allocator", validate_parameters=False)
def train_allocator(
    config: AllocatorConfig | None = None, settings: Settings | None = None, source: str = "stored bars"
) -> AllocatorSummary:
    """Train the allocator on the stored bars of ``config.symbols``; the new version of
    ``fks-allocator`` gets the alias ``challenger``. ``source`` says where the bars came from
    (``synthetic`` for the simulated market), as the run's ``data_source`` tag."""
    config = config or AllocatorConfig()
    settings = settings or get_settings()
    return train_allocator_task(config, settings, source)


if __name__ == "__main__":
    train_allocator()
