"""The library behind the pipeline: data, models, losses, training, samples and scores."""
