// A single OpenSearch node for tests/e2e_opensearch.rs, started from the jars tests/kafka/fetch.sh copies from
// Maven Central (tests/kafka/opensearch-pom.xml): the server with its netty4 HTTP and transport layer as a
// classpath plugin, no other module or plugin (so no security plugin: plain HTTP, no authentication).
// Usage: TestNode <home directory> <http port> <transport port>. Prints "STARTED" once the node runs, and runs
// until it is killed.

import java.util.Collections;
import java.util.List;

import org.opensearch.common.settings.Settings;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.transport.Netty4Plugin;

public class TestNode {
    /** Node's constructor that takes plugins from the classpath is protected. */
    static class WithNetty extends Node {
        WithNetty(Settings settings) {
            super(
                InternalSettingsPreparer.prepareEnvironment(settings, Collections.emptyMap(), null, () -> "streamctl-test"),
                List.of(Netty4Plugin.class),
                true
            );
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: TestNode <home> <http port> <transport port>");
            System.exit(2);
        }
        Settings settings = Settings.builder()
            .put("path.home", args[0])
            .put("cluster.name", "streamctl-test")
            .put("node.name", "streamctl-test")
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", args[1])
            .put("transport.port", args[2])
            .put("http.type", "netty4")
            .put("transport.type", "netty4")
            // A full disk on a shared test machine must not turn the indices read-only mid-test.
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .build();
        Node node = new WithNetty(settings);
        node.start();
        System.out.println("STARTED");
        System.out.flush();
        Thread.currentThread().join();
    }
}
