"""Preset configs (YAML), shipped inside the package: `cyclekit presets` lists them."""
