"""The GraphQL schema: each app contributes its Query and Mutation classes."""

import graphene

from accounts.graphql.schema import AccountsMutation, AccountsQuery


class Query(AccountsQuery, graphene.ObjectType):
    pass


class Mutation(AccountsMutation, graphene.ObjectType):
    pass


schema = graphene.Schema(query=Query, mutation=Mutation)
