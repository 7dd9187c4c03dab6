"""The leaderboard: the paper-claims registry (`claims`), run records aggregated beside it
(`aggregate`), the Markdown/HTML/PNG reports (`report`, `plots`) and the seed-stability
gate (`stability`).
"""
