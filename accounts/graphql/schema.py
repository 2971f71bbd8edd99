import graphene


class AccountsQuery(graphene.ObjectType):
    ping = graphene.String()

    def resolve_ping(root, info):  # type: ignore[no-untyped-def]
        return "pong"


class AccountsMutation(graphene.ObjectType):
    noop = graphene.Boolean()
