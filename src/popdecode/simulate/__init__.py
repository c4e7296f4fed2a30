"""Simulated multi-animal reaching datasets with ground truth (``popdecode simulate``).

    from popdecode.simulate.simulator import SimulationConfig, simulate_dataset
    from popdecode.simulate.ground_truth import load_ground_truth
"""
