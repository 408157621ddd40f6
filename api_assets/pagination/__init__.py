"""Where a series of pages ends: paginators (one class per `type:`, registered by name) that read
each answer and say what to ask next, and the rules that judge a series finished (stop reasons,
loops, probes past a stated total, `max_pages`).
"""
