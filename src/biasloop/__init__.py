"""biasloop: run, measure and mitigate social bias in LLM synthetic-data pipelines."""

__version__ = "0.1.0"
