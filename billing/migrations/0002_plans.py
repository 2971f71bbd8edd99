"""The plans on offer, as data (billing/plans.py; an operator may change them in the admin)."""

from django.db import migrations

from billing.plans import PLANS, ensure_default_plans


def add_plans(apps, schema_editor):
    ensure_default_plans(apps.get_model("billing", "Plan"))


def remove_plans(apps, schema_editor):
    apps.get_model("billing", "Plan").objects.filter(code__in=[p["code"] for p in PLANS]).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(add_plans, remove_plans)]
