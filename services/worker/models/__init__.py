"""Python BMI models shipped with DMOD for the embedded ngen-compatible engine.

python_type strings for a realization's `bmi_python` formulation:
  dmod.services.worker.models.cfe.CFE                      CFE-style conceptual runoff model
  dmod.services.worker.models.pet.PriestleyTaylorPET        Priestley-Taylor PET (for bmi_multi)
  dmod.services.worker.models.passthrough.PassThrough       Q_OUT = precipitation (tests)

`init_configs.write_init_configs` writes per-catchment init configs for a (synthetic) domain.
"""
