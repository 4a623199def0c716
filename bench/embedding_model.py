"""The offline embedding model of `daydream dedup`: load time, essays per second at a realistic essay length, peak RSS,
and how far paraphrases stand from unrelated texts on a small hand-written set (`python bench/embedding_model.py`)."""

import random
import resource
import time

import numpy as np

from daydream_luigi.providers.local.minilm import MiniLMEmbedder, model_dir

t0 = time.perf_counter()
emb = MiniLMEmbedder()
load = time.perf_counter() - t0
words = (
    "tide turbine estuary ant trail pheromone forage bread starter yeast energy storage swarm robot network "
    "scarcity battery grid route colony fermentation sensor feedback adapt"
).split()
rng = random.Random(1)
essays = [" ".join(rng.choice(words) for _ in range(450)) + "." for _ in range(40)]
t0 = time.perf_counter()
emb(essays)
per = (time.perf_counter() - t0) / len(essays)
pairs = [
    (
        "Tidal turbines in estuaries could store energy by pumping water uphill when the tide is high.",
        "When the tide rises, estuary turbines might pump water to a higher reservoir as a way of storing energy.",
    ),
    (
        "Ant colonies find short routes by laying pheromone trails that evaporate when unused.",
        "Ants discover efficient paths because unused pheromone trails fade while busy ones get reinforced.",
    ),
    (
        "A sourdough starter is a living culture of wild yeast and lactic bacteria that leavens bread.",
        "Bread can be raised by a starter, a culture of wild yeasts and lactic acid bacteria kept alive by feeding.",
    ),
    (
        "Delivery robots could share battery charge with each other like a swarm passing resources along.",
        "A swarm of delivery robots might pass battery charge from one to another, moving energy through the group.",
    ),
]
v = [np.array(emb([a, b])) for a, b in pairs]
para = [float(x[0] @ x[1]) for x in v]
unrel = [float(v[i][0] @ v[j][1]) for i in range(len(v)) for j in range(len(v)) if i != j]
size = sum(p.stat().st_size for p in model_dir().iterdir())
print(
    f"load {load:.2f} s; {per * 1000:.0f} ms per 450-word essay ({1 / per:.1f} essays/s, 1 core numpy); "
    f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; model files {size / 1e6:.0f} MB"
)
print(
    f"paraphrase cosine min {min(para):.2f} (all {', '.join(f'{p:.2f}' for p in para)}); unrelated max {max(unrel):.2f}"
)
