// GraphiQL against this server's /graphql. The token goes in the Headers tab;
// GraphiQL does not store it (shouldPersistHeaders is off).
const fetcher = GraphiQL.createFetcher({ url: "/graphql" });
ReactDOM.createRoot(document.getElementById("graphiql")).render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultHeaders: JSON.stringify({ Authorization: "Bearer <token from crmkit token issue>" }, null, 2),
    shouldPersistHeaders: false,
  }),
);
