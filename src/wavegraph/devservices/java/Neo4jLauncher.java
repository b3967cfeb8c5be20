// Starts an embedded Neo4j Community DBMS with Bolt, for `wavegraph services up`.
//
// Usage: java -cp '<lib>/*' Neo4jLauncher <home-dir> <neo4j.conf>
// Every setting (Bolt address, auth, page cache ...) comes from the config file written by
// wavegraph.devservices.neo4j. When auth is on, the password of user `neo4j` is set from the environment
// variable NEO4J_INITIAL_PASSWORD. Stops cleanly on SIGTERM/SIGINT through a shutdown hook.

import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;

public final class Neo4jLauncher {
    private Neo4jLauncher() {}

    public static void main(String[] args) throws InterruptedException {
        if (args.length != 2) {
            System.err.println("usage: Neo4jLauncher <home-dir> <neo4j.conf>");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        Path conf = Path.of(args[1]).toAbsolutePath();

        long started = System.nanoTime();
        DatabaseManagementService dbms =
                new DatabaseManagementServiceBuilder(home).loadPropertiesFromFile(conf).build();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("neo4j-launcher: shutting down");
            dbms.shutdown();
            stopped.countDown();
        }, "neo4j-launcher-shutdown"));

        String password = System.getenv("NEO4J_INITIAL_PASSWORD");
        if (password != null && !password.isEmpty()) {
            setInitialPassword(dbms, password);
        }
        System.out.printf("neo4j-launcher: started in %.1f s (home %s)%n", (System.nanoTime() - started) / 1e9, home);
        stopped.await();
    }
    private static void setInitialPassword(DatabaseManagementService dbms, String password) {
        try {
            dbms.database("system").executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED", Map.of("password", password));
        } catch (RuntimeException e) {
            // Already set to this value on an earlier start: nothing to do.
            System.out.println("neo4j-launcher: password unchanged (" + e.getMessage() + ")");
        }
    }
}
