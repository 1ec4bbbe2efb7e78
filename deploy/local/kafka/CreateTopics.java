// Creates Kafka topics that do not exist yet, with replication factor 1.
// Run by deploy/local/kafka.sh topics (Java 17 single-file launch):
//   java -cp "<kafka jars>/*" CreateTopics.java <bootstrap> name:partitions ...
// Existing topics are left alone (a different partition count is reported).
// Exit status: 0 when every topic exists afterwards, 1 otherwise, 2 on usage.

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.errors.TopicExistsException;

public class CreateTopics {
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: CreateTopics <bootstrap> name:partitions ...");
            System.exit(2);
        }
        Map<String, Integer> wanted = new LinkedHashMap<>();
        for (int i = 1; i < args.length; i++) {
            int colon = args[i].lastIndexOf(':');
            if (colon <= 0) {
                System.err.println("bad topic spec: " + args[i]);
                System.exit(2);
            }
            wanted.put(args[i].substring(0, colon), Integer.parseInt(args[i].substring(colon + 1)));
        }

        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        boolean ok = true;
        try (Admin admin = Admin.create(props)) {
            Set<String> existing = admin.listTopics().names().get(30, TimeUnit.SECONDS);
            List<NewTopic> toCreate = new ArrayList<>();
            for (Map.Entry<String, Integer> e : wanted.entrySet()) {
                if (!existing.contains(e.getKey())) {
                    toCreate.add(new NewTopic(e.getKey(), e.getValue(), (short) 1));
                }
            }
            if (!toCreate.isEmpty()) {
                Map<String, org.apache.kafka.common.KafkaFuture<Void>> results =
                        admin.createTopics(toCreate).values();
                for (NewTopic t : toCreate) {
                    try {
                        results.get(t.name()).get(30, TimeUnit.SECONDS);
                        System.err.printf("created %s (%d partitions)%n", t.name(), t.numPartitions());
                    } catch (ExecutionException ex) {
                        if (ex.getCause() instanceof TopicExistsException) {
                            System.err.printf("exists  %s%n", t.name());
                        } else {
                            System.err.printf("FAILED  %s: %s%n", t.name(), ex.getCause());
                            ok = false;
                        }
                    }
                }
            }
            Map<String, TopicDescription> desc =
                    admin.describeTopics(wanted.keySet()).allTopicNames().get(30, TimeUnit.SECONDS);
            for (Map.Entry<String, Integer> e : wanted.entrySet()) {
                TopicDescription d = desc.get(e.getKey());
                int have = d.partitions().size();
                if (existing.contains(e.getKey())) {
                    System.err.printf("exists  %s (%d partitions)%s%n", e.getKey(), have,
                            have == e.getValue() ? "" : " -- WARNING: wanted " + e.getValue());
                }
            }
        }
        System.exit(ok ? 0 : 1);
    }
}
