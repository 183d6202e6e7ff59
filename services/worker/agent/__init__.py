"""The worker agent: prepares a job directory from the job's datasets, runs the model under
mpiexec, streams logs/progress/heartbeats to JobService and uploads the outputs."""
