"""Reports from the stored data: the weekly failure report (`triage report`) and the A/B report
(`triage ab report`). Heavy imports (numpy, scikit-learn, matplotlib) stay inside these modules."""
