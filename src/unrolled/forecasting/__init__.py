"""Time-series forecasting: baselines, error metrics and recurrent forecasters."""
