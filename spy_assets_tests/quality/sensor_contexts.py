"""The context a run-status sensor gets for one event of a run of the real instance."""

from dagster import (
    DagsterEventType,
    DagsterInstance,
    RunStatusSensorContext,
    SensorDefinition,
    build_run_status_sensor_context,
)

from spy_assets.defs.resources import StorageResource


def run_event_context(
    instance: DagsterInstance,
    sensor: SensorDefinition,
    run_id: str,
    event_type: DagsterEventType,
    data_dir: object,
) -> RunStatusSensorContext:
    """The sensor's context for the run's (single) event of ``event_type``."""
    run = instance.get_run_by_id(run_id)
    [event] = instance.all_logs(run_id, of_type=event_type)
    return build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=event.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
        resources={"storage": StorageResource(root=str(data_dir))},
    )
