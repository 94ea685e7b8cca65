"""Data plane of the Tamales forecasting platform: settings, raw layout, cleaning, features, stores."""
