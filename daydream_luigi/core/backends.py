"""The backends `--backend` chooses between, declared as data: which models each one runs, what it adds to their
calls, whether `daydream run` starts its server. What a backend does at run time (its server, its embedder) is
`providers.backends`'s, registered under the same names.

local  the embedded offline models: Qwen2.5-Coder-1.5B served by llama.cpp for chat, all-MiniLM-L6-v2 for embeddings;
       its models are the llm_models.csv rows of provider `embedded`, whose server `run` starts itself.
http   every other provider declared under `providers:` in config/daydream.yaml, reached over HTTP.

What a backend adds to a call (`call_shape`) is part of the gen_id of every generation it makes (see `identity`):
the offline model writes with its own sampling and judges under a system prompt and a llama.cpp grammar that make a
1.5B model's verdict readable. Edit any of them and its generations get new ids.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from daydream_luigi.core.settings import PAIRWISE_STAGE

# The offline judge's instructions. Weaknesses come first on purpose: over 4 runs per essay (good / bland / off-topic
# essay) criticism-first gave mean scores 7.3 / 4.3 / 1.5, praise-first 8.0 / 7.0 / 2.0.
JUDGE_SYSTEM_PROMPT = (
    "You are a strict, calibrated critic of short essays. Judge only substance: an original "
    "idea, a concrete mechanism, specific details, coherence. Length, confidence and pleasant "
    "wording earn nothing. Calibrate: most essays are ordinary and score 3 to 6; a plain essay "
    "that only says the concepts could work together, without a concrete mechanism, scores "
    "3 or 4; 7 needs clearly strong, specific work; 8 or 9 is rare and reserved for exceptional "
    "essays, 10 for a flawless one; an empty, off-topic or incoherent essay scores 0 to 2. Do not "
    "state a score until the last line. Answer in exactly this shape:\n"
    "Weaknesses: <the most serious problems, one sentence>\n"
    "Strengths: <one sentence>\n"
    "SCORE: <a whole number 0-10>"
)

# GBNF for the "grammar" request field: one to three reasoning lines of 1-300 characters,
# then the verdict line "SCORE: N" with N a whole number 0-10 ("10" or one digit, so never 11 or 01)
# and nothing after it. A reasoning line may not begin
# with "SC", so the model cannot announce its score first and argue for it afterwards
# (measured: with that freedom it led with "SCORE: 8, because ..." and ranked a bland
# essay above a good one).
JUDGE_GRAMMAR = r"""root    ::= reason reason? reason? verdict
reason  ::= ( [^S\n\r] rchar{0,299} | "S" ( [^C\n\r] rchar{0,298} )? ) "\n"
rchar   ::= [^\n\r]
verdict ::= "SCORE: " ( "10" | [0-9] )
"""
# The pairwise judge's answer: the same reasoning lines, then exactly one verdict line (without it the 1.5B model
# wrote "Therefore, the winner is ESSAY A." or a bare "TIE": 0 of 4 answers parsed; with it, every answer parses).
PAIRWISE_GRAMMAR = r"""root    ::= reason reason? reason? verdict
reason  ::= ( [^W\n\r] rchar{0,299} | "W" ( [^I\n\r] rchar{0,298} )? ) "\n"
rchar   ::= [^\n\r]
verdict ::= "WINNER: " ( "A" | "B" | "TIE" )
"""

# How the offline model writes drafts and essays (its temperature is the stage's, from config/daydream.yaml).
WRITING_SAMPLING = {"top_p": 0.9, "frequency_penalty": 0.3}


@dataclass(frozen=True)
class Backend:
    name: str  # as --backend and the [daydream] backend setting name it
    endpoint: str | None  # the endpoint of its models (llm_models.csv); None: every endpoint no other backend claims
    server_url_env: str | None = None  # `run` starts its server and puts the URL here (its provider's base_url_env)
    call_shape: Mapping[str, Mapping[str, object]] = field(default_factory=dict)  # stage -> what its calls add
    seeded: bool = False  # each call carries a seed derived from its gen_id: a run is reproducible on one machine
    embedding_models: str = ""  # how a message names its embedding models

    @property
    def starts_server(self) -> bool:
        return self.server_url_env is not None


LOCAL = Backend(
    "local",
    endpoint="embedded",
    server_url_env="DAYDREAM_EMBEDDED_BASE_URL",
    call_shape={
        "draft": WRITING_SAMPLING,
        "essay": WRITING_SAMPLING,
        "evaluation": {"grammar": JUDGE_GRAMMAR, "system_prompt": JUDGE_SYSTEM_PROMPT},
        PAIRWISE_STAGE: {"grammar": PAIRWISE_GRAMMAR},
    },
    seeded=True,
    embedding_models="offline (provider embedded)",
)
HTTP = Backend("http", endpoint=None, embedding_models="provider's (not embedded)")
BACKENDS = {backend.name: backend for backend in (LOCAL, HTTP)}
DEFAULT_ENDPOINT = "openrouter"  # where a model's calls go when llm_models.csv names no endpoint


def backend_of(endpoint: str) -> Backend:
    """The backend that runs the models of `endpoint` (a declared endpoint's id)."""
    return next((b for b in BACKENDS.values() if b.endpoint == endpoint), HTTP)


def default_backend() -> str:
    """http when a provider key is in the environment, else the embedded offline model (a run hands its backend to
    its task processes as a Luigi setting: `execution.knobs`)."""
    return HTTP.name if os.environ.get("OPENROUTER_API_KEY") else LOCAL.name
