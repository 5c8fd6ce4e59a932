"""Growth: the policy (when and how much), the controller that applies it, and the grow
job (``grownet grow``) built on the training job."""

from grownet.grow.controller import Decision, Grower, GrowthEvent
from grownet.grow.job import GrowJob, job_for, resume_job, start_job
from grownet.grow.policy import GrowthPolicy
from grownet.grow.propose import Unit, growable_units

__all__ = ["Decision", "GrowJob", "GrowthEvent", "GrowthPolicy", "Grower", "Unit",
           "growable_units", "job_for", "resume_job", "start_job"]
