"""Drop the single-column indexes of four foreign keys whose column already leads a composite
index: every state change, claim and run creation wrote an entry into each of them for nothing
(docs/performance.md, "Eighth round"). Only the indexes go: Django's AlterField would also drop and
re-add each foreign key, which re-checks every row of the table under a lock."""

import django.db.models.deletion
from django.db import migrations, models

# (table, column, Django's name for the column's index)
REDUNDANT = [
    ("orchestration_flowrun", "flow_id", "orchestration_flowrun_flow_id_e9cb287e"),
    ("orchestration_flowrun", "schedule_id", "orchestration_flowrun_schedule_id_939a85af"),
    ("orchestration_flowrun", "workspace_id", "orchestration_flowrun_workspace_id_a768ee41"),
    ("orchestration_idempotencyrecord", "workspace_id", "orchestration_idempotencyrecord_workspace_id_e2167279"),
]


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0002_auth_generation"),
        ("orchestration", "0009_hot_path_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(f'DROP INDEX IF EXISTS "{index}"', f'CREATE INDEX "{index}" ON "{table}" ("{column}")')
                for table, column, index in REDUNDANT
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="flowrun",
                    name="flow",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name="runs", to="orchestration.flow"),
                ),
                migrations.AlterField(
                    model_name="flowrun",
                    name="schedule",
                    field=models.ForeignKey(blank=True, db_index=False, null=True,
                                            on_delete=django.db.models.deletion.SET_NULL, related_name="runs",
                                            to="orchestration.schedule"),
                ),
                migrations.AlterField(
                    model_name="flowrun",
                    name="workspace",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name="+", to="accounts.workspace"),
                ),
                migrations.AlterField(
                    model_name="idempotencyrecord",
                    name="workspace",
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name="+", to="accounts.workspace"),
                ),
            ],
        ),
    ]
