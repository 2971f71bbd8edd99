"""The GraphQL schema: each app contributes its Query and Mutation classes."""

import graphene

from accounts.graphql.schema import AccountsMutation, AccountsQuery
from billing.graphql import BillingQuery
from orchestration.graphql.schema import OrchestrationMutation, OrchestrationQuery


class Query(AccountsQuery, OrchestrationQuery, BillingQuery, graphene.ObjectType):
    pass


class Mutation(AccountsMutation, OrchestrationMutation, graphene.ObjectType):
    pass


schema = graphene.Schema(query=Query, mutation=Mutation)
