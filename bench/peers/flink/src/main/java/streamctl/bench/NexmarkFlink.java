package streamctl.bench;

import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableEnvironment;

/**
 * The Nexmark queries of bench/nexmark-project on Flink SQL with its Kafka connector (Flink 2.2,
 * flink-sql-connector-kafka), for bench/scale.sh: the same topics on the same broker, read from the
 * earliest offset up to the end offsets seen at the start ('scan.bounded.mode' = 'latest-offset', so
 * the job ends by itself; at the end of a bounded source the watermark goes to the end of time and
 * every window closes), the result written to a Kafka topic as JSON. Streaming mode, parallelism 1,
 * the local mini-cluster in this JVM.
 *
 * <p>Usage: NexmarkFlink QUERY BOOTSTRAP OUTPUT_TOPIC GROUP_ID, QUERY = q1 | q2 | window | join. The input
 * topics are PREFIX + bid / auction, PREFIX from the system property nexmark.prefix (default "nexmark.").
 */
public final class NexmarkFlink {
    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: NexmarkFlink q1|q2|window|join BOOTSTRAP OUTPUT_TOPIC GROUP_ID");
            System.exit(2);
        }
        String query = args[0], bootstrap = args[1], out = args[2], group = args[3];
        String prefix = System.getProperty("nexmark.prefix", "nexmark.");
        TableEnvironment t = TableEnvironment.create(EnvironmentSettings.inStreamingMode());
        t.getConfig().set("parallelism.default", "1");
        t.getConfig().set("table.local-time-zone", "UTC");
        String source = "'connector' = 'kafka', 'properties.bootstrap.servers' = '" + bootstrap + "', "
                + "'properties.group.id' = '" + group + "', 'scan.startup.mode' = 'earliest-offset', "
                + "'scan.bounded.mode' = 'latest-offset', 'format' = 'json'";
        t.executeSql("CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, "
                + "date_time BIGINT, extra STRING, ts AS TO_TIMESTAMP_LTZ(date_time, 3), "
                + "WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('topic' = '" + prefix + "bid', " + source + ")");
        t.executeSql("CREATE TABLE auction (id BIGINT, item_name STRING, description STRING, initial_bid BIGINT, "
                + "reserve BIGINT, date_time BIGINT, expires BIGINT, seller BIGINT, category BIGINT, extra STRING) "
                + "WITH ('topic' = '" + prefix + "auction', " + source + ")");
        String columns, select;
        switch (query) {
            case "q1" -> {
                columns = "auction BIGINT, bidder BIGINT, price_eur DOUBLE, date_time BIGINT";
                select = "SELECT auction, bidder, CAST(price AS DOUBLE) * 0.908, date_time FROM bid";
            }
            case "q2" -> {
                columns = "auction BIGINT, price BIGINT";
                select = "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0";
            }
            case "window" -> {
                columns = "auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, max_price BIGINT";
                select = "SELECT auction, window_start, COUNT(*), MAX(price) "
                        + "FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND)) "
                        + "GROUP BY auction, window_start, window_end";
            }
            case "join" -> {
                columns = "auction BIGINT, bidder BIGINT, price BIGINT, item_name STRING, category BIGINT";
                select = "SELECT b.auction, b.bidder, b.price, a.item_name, a.category "
                        + "FROM bid AS b JOIN auction AS a ON b.auction = a.id";
            }
            default -> {
                System.err.println("unknown query " + query);
                System.exit(2);
                return;
            }
        }
        t.executeSql("CREATE TABLE out_table (" + columns + ") WITH ('connector' = 'kafka', 'topic' = '" + out
                + "', 'properties.bootstrap.servers' = '" + bootstrap + "', 'format' = 'json', "
                + "'sink.delivery-guarantee' = 'at-least-once')");
        t.executeSql("INSERT INTO out_table " + select).await();
    }
}
