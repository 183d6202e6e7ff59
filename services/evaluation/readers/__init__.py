"""Readers turning files into the wide time × location frames the evaluation works on."""
from .ngen_csv import read_nexus_csv, read_nexus_csv_dir
from .ngen_netcdf import read_nexus_netcdf
from .observations import load_observations, read_observations
from .simulation import load_simulation

__all__ = ["load_observations", "load_simulation", "read_nexus_csv", "read_nexus_csv_dir",
           "read_nexus_netcdf", "read_observations"]
