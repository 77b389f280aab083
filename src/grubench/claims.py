"""The document's claims, by id: the ids presets, runs (tag `claims`) and the report use.

C1-C5 are decided by the report from recorded runs (`grubench.report.verdicts`); C6 and C7 are
properties of the code, checked by tests. docs/claims.md gives each claim with its equations and
the published numbers.
"""

CLAIMS = {
    "C1": "LSTM has a longer memory than a basic RNN and beats it on most sequence tasks",
    "C2": "LSTM is less prone to vanishing gradients than a basic RNN",
    "C3": "LSTM is expensive: many parameters, costly to compute",
    "C4": "the forget gate matters most; a forget-gate-only network (JANET) beats a standard LSTM",
    "C5": "the GRU (two gates, one state) is a cheaper simplification of the LSTM that works as well",
    "C6": "gate semantics: r=0 takes the candidate from x_t alone; z=0 keeps h_{t-1}; z=1 takes the candidate",
    "C7": "a GRUCell unrolled by hand is the GRU layer; GRU layers stack",
}
