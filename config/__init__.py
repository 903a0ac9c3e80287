"""Settings and default configurations."""

from config.assets import DEFAULT_CALENDARS, AssetClass, AssetSpec, load_asset_specs
from config.settings import Settings, get_settings

__all__ = ["DEFAULT_CALENDARS", "AssetClass", "AssetSpec", "Settings", "get_settings", "load_asset_specs"]
