"""`hydra/launcher: population` — trains a sweep's same-shape jobs together as one batched model.

Any sweeper hands it a batch of jobs (Hydra's grid sweeper: the whole grid; our Optuna sweeper: `n_jobs`
trials). Jobs that can share a model (`experiments.population.population_key`) train as one population;
the others run one after another as the basic launcher runs them. Every job still gets its own output
dir, its own MLflow child run and its own result for the sweeper.
"""
