"""The thesis's online outfit recommender (fork web/): per-visitor cold start, packed ranking, server."""
