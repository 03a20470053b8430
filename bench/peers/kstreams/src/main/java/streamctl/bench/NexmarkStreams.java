package streamctl.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.GlobalKTable;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;

/**
 * The Nexmark queries of bench/nexmark-project on Kafka Streams 4.4 (the engine under ksqlDB), for
 * bench/scale.sh, written the way its documentation shows: a KStream of the bid topic (String keys = the
 * auction id, JSON values read with Jackson), mapValues / filter for q1 and q2, a windowed aggregation
 * (tumbling 10 s windows, 1 s grace, final results through suppress(untilWindowCloses)) for the window, and a
 * KStream-GlobalKTable join for the enrichment (a GlobalKTable is read in full before processing starts,
 * so every bid finds its auction, as in streamctl). One stream thread, at-least-once (its default), from
 * the earliest offset; the output goes to a Kafka topic as JSON.
 *
 * <p>Kafka Streams runs until stopped: this program counts the bids processed and closes the application
 * (which flushes and commits) once all BIDS were processed, or after 30 s without progress (printed as
 * STALLED).
 *
 * <p>Usage: NexmarkStreams QUERY BOOTSTRAP BIDS OUTPUT_TOPIC APPLICATION_ID, QUERY = q1 | q2 | window | join.
 * The input topics are PREFIX + bid / auction, PREFIX from the system property nexmark.prefix (default
 * "nexmark."); with BIDS = 0 it stops once running (its fixed start-up cost, on empty topics).
 */
public final class NexmarkStreams {
    private static final ObjectMapper JSON = new ObjectMapper();

    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: NexmarkStreams q1|q2|window|join BOOTSTRAP BIDS OUTPUT_TOPIC APPLICATION_ID");
            System.exit(2);
        }
        String query = args[0], bootstrap = args[1], out = args[3], appId = args[4];
        long expected = Long.parseLong(args[2]);
        AtomicLong processed = new AtomicLong();
        String prefix = System.getProperty("nexmark.prefix", "nexmark.");

        StreamsBuilder builder = new StreamsBuilder();
        Serde<String> str = Serdes.String();
        KStream<String, String> bids = builder.stream(prefix + "bid", Consumed.with(str, str))
                .peek((k, v) -> processed.incrementAndGet());
        switch (query) {
            case "q1" -> bids.mapValues(v -> {
                JsonNode b = parse(v);
                ObjectNode o = JSON.createObjectNode();
                o.put("auction", b.get("auction").asLong());
                o.put("bidder", b.get("bidder").asLong());
                o.put("price_eur", (double) b.get("price").asLong() * 0.908);
                o.put("date_time", b.get("date_time").asLong());
                return o.toString();
            }).to(out, Produced.with(str, str));
            case "q2" -> bids.mapValues(NexmarkStreams::parse)
                    .filter((k, b) -> b.get("auction").asLong() % 123 == 0)
                    .mapValues(b -> {
                        ObjectNode o = JSON.createObjectNode();
                        o.put("auction", b.get("auction").asLong());
                        o.put("price", b.get("price").asLong());
                        return o.toString();
                    }).to(out, Produced.with(str, str));
            case "window" -> bids.mapValues(v -> parse(v).get("price").asLong())
                    .groupByKey(Grouped.with(str, Serdes.Long()))
                    .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofSeconds(10), Duration.ofSeconds(1)))
                    .aggregate(() -> new long[] {0, Long.MIN_VALUE},
                            (k, price, agg) -> new long[] {agg[0] + 1, Math.max(agg[1], price)},
                            Materialized.with(str, countMaxSerde()))
                    .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
                    .toStream()
                    .map((w, agg) -> {
                        ObjectNode o = JSON.createObjectNode();
                        o.put("auction", Long.parseLong(w.key()));
                        o.put("window_start", w.window().start());
                        o.put("bids", agg[0]);
                        o.put("max_price", agg[1]);
                        return KeyValue.pair(w.key(), o.toString());
                    }).to(out, Produced.with(str, str));
            case "join" -> {
                GlobalKTable<String, String> auctions = builder.globalTable(prefix + "auction", Consumed.with(str, str));
                bids.join(auctions, (k, v) -> k, (bid, auction) -> {
                    JsonNode b = parse(bid), a = parse(auction);
                    ObjectNode o = JSON.createObjectNode();
                    o.put("auction", b.get("auction").asLong());
                    o.put("bidder", b.get("bidder").asLong());
                    o.put("price", b.get("price").asLong());
                    o.put("item_name", a.get("item_name").asText());
                    o.put("category", a.get("category").asLong());
                    return o.toString();
                }).to(out, Produced.with(str, str));
            }
            default -> {
                System.err.println("unknown query " + query);
                System.exit(2);
            }
        }

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        props.put(StreamsConfig.STATE_DIR_CONFIG, Files.createTempDirectory("kstreams-nexmark").toString());
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        streams.setUncaughtExceptionHandler(e -> {
            System.err.println("kafka streams failed: " + e);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
                    .SHUTDOWN_CLIENT;
        });
        streams.start();
        long last = -1, lastChange = System.nanoTime();
        while (true) {
            Thread.sleep(50);
            long n = processed.get();
            if (n >= expected && streams.state() == KafkaStreams.State.RUNNING) {
                break;
            }
            if (streams.state() == KafkaStreams.State.ERROR || streams.state() == KafkaStreams.State.NOT_RUNNING) {
                System.err.println("kafka streams " + query + ": stopped in state " + streams.state() + " after " + n);
                System.exit(1);
            }
            if (n != last) {
                last = n;
                lastChange = System.nanoTime();
            } else if (System.nanoTime() - lastChange > 30_000_000_000L) {
                System.err.println("kafka streams " + query + ": STALLED at " + n + " of " + expected
                        + " bids (nothing for 30 s)");
                break;
            }
        }
        streams.close(Duration.ofSeconds(60));
        System.err.println("kafka streams " + query + ": " + processed.get() + " bids processed");
    }

    private static JsonNode parse(String v) {
        try {
            return JSON.readTree(v);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** (count, max) of a window as two longs. */
    private static Serde<long[]> countMaxSerde() {
        return Serdes.serdeFrom((topic, a) -> a == null ? null : ByteBuffer.allocate(16).putLong(a[0]).putLong(a[1]).array(),
                (topic, b) -> {
                    if (b == null) {
                        return null;
                    }
                    ByteBuffer buf = ByteBuffer.wrap(b);
                    return new long[] {buf.getLong(), buf.getLong()};
                });
    }
}
