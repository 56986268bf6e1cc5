"""Model presets: one TOML file per known compact model (installed as ``edgetune._presets``)."""
